"""dlib's face-recognition network read into torch gives dlib's own 128-d descriptors on real faces,
tells people apart, takes gradients, and refuses a file that is not that network."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceloom.errors import FormatError
from faceloom.faces.detect_dlib import dlib_model_path
from faceloom.faces.dlib_resnet import CHIP_SIZE, MODEL_FILE, chip_matrix, load_dlib_resnet, read_layers
from faceloom.media.reader import iter_video


def _faces(clip: Path, n: int, every: int = 7) -> list[tuple[np.ndarray, object]]:
    """(frame, dlib shape) of the first face in every ``every``-th frame, ``n`` of them."""
    import dlib

    find = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(dlib_model_path("shape_predictor_68_face_landmarks.dat"))
    out = []
    for i, frame in enumerate(iter_video(clip)):
        if i % every:
            continue
        rgb = np.ascontiguousarray(frame.rgb)
        boxes = find(rgb, 0)
        if boxes:
            out.append((rgb, landmarks(rgb, boxes[0])))
        if len(out) == n:
            break
    return out


@pytest.fixture(scope="module")
def people(data: Path) -> dict[str, list[tuple[np.ndarray, object]]]:
    """Real faces of three people: s4 (720x576), s1 (360x288), CREMA-D 1001 (480x360)."""
    return {
        "s4": _faces(data / "grid" / "s4_hq" / "swau8a.mpg", 6),
        "s1": _faces(sorted((data / "grid" / "s1_more").glob("*.mpg"))[0], 5),
        "crema": _faces(sorted((data / "crema-d").glob("*.flv"))[0], 5),
    }


def _chips(faces: list[tuple[np.ndarray, object]]) -> np.ndarray:
    import dlib

    return np.stack([dlib.get_face_chip(rgb, shape, CHIP_SIZE, 0.25) for rgb, shape in faces])


def _torch(chips: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(chips).permute(0, 3, 1, 2).float()


def test_descriptors_match_dlib_on_real_faces(people: dict[str, list[tuple[np.ndarray, object]]]) -> None:
    import dlib

    reference = dlib.face_recognition_model_v1(dlib_model_path(MODEL_FILE))
    net = load_dlib_resnet()
    weights = sum(t.numel() for t in [*net.parameters(), *net.buffers()])
    assert weights == 5_614_592 + 3  # dlib's weights and the input means
    for name, faces in people.items():
        chips = _chips(faces)
        theirs = np.array([reference.compute_face_descriptor(c) for c in chips])
        with torch.no_grad():
            ours = net(_torch(chips)).numpy()
        assert np.abs(ours - theirs).max() < 1e-4, name


def test_it_tells_people_apart_on_chips_it_cuts_itself(
    people: dict[str, list[tuple[np.ndarray, object]]],
) -> None:
    """chip_matrix gives dlib's chip within interpolation; the same person lies under 0.6, others
    above, as with dlib."""
    net = load_dlib_resnet()
    means = {}
    for name, faces in people.items():
        own = []
        for rgb, shape in faces:
            lm = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)  # type: ignore[attr-defined]
            own.append(cv2.warpAffine(rgb, chip_matrix(lm), (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR))
        with torch.no_grad():
            ours = net(_torch(np.stack(own))).numpy()
            dlibs = net(_torch(_chips(faces))).numpy()
        assert np.linalg.norm(ours - dlibs, axis=1).max() < 0.05, name
        means[name] = ours.mean(axis=0)
        assert np.linalg.norm(ours - means[name], axis=1).max() < 0.4, name
    names = list(means)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.linalg.norm(means[a] - means[b]) > 0.6, (a, b)


def test_gradients_reach_the_pixels_and_the_weights_stay_frozen(
    people: dict[str, list[tuple[np.ndarray, object]]],
) -> None:
    net = load_dlib_resnet()
    x = _torch(_chips(people["s4"][:2])).requires_grad_(True)
    feats = net.features(x, levels=2)
    assert [f.shape[1] for f in feats] == [32, 32, 64]
    (net(x).pow(2).sum() + feats[1].mean()).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in net.parameters())


def test_a_file_that_is_not_the_network_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "shape.dat"
    other.write_bytes(Path(dlib_model_path("shape_predictor_5_face_landmarks.dat")).read_bytes()[:4096])
    with pytest.raises(FormatError, match=r"shape\.dat: not dlib's face-recognition network"):
        read_layers(other)
    cut = tmp_path / "cut.dat"
    cut.write_bytes(Path(dlib_model_path(MODEL_FILE)).read_bytes()[:200_000])
    with pytest.raises(FormatError, match=r"cut\.dat"):
        read_layers(cut)
