"""Find the faces to swap in a stream of frames: detect (or read a faceset), track, pick the source
person by identity, smooth landmarks over time and align a crop for the model."""

from __future__ import annotations

from typing import Any

import numpy as np

from faceloom.config import ConvertConfig
from faceloom.convert.face_swapper import FaceSwapper
from faceloom.convert.frames import FaceJob, FrameJob
from faceloom.convert.smoothing import TrackSmoother
from faceloom.faces.align import alignment_matrix, transform_points, warp_crop
from faceloom.faces.detect import FaceDetector, create_detector, detect_with_rotation
from faceloom.faces.faceset import Faceset
from faceloom.faces.identity import FaceEmbedder
from faceloom.faces.tracking import Tracker
from faceloom.metrics import embedding_distance


class FaceFinder:
    """Detect (or look up), track, pick the source person, smooth and align faces of a frame stream.

    Not thread-safe: tracking and smoothing follow frame order, so one instance runs in one thread.
    """

    def __init__(
        self,
        swapper: FaceSwapper,
        config: ConvertConfig,
        *,
        faceset: Faceset | None = None,
        faceset_key: str | None = None,
        track_faces: bool = True,
    ) -> None:
        self.cfg = config
        self.swapper = swapper
        self.detector: FaceDetector | None = None
        self.rows: dict[int, list[Any]] = {}
        if faceset is not None:
            for r in faceset.records:
                if r.source == faceset_key:
                    self.rows.setdefault(r.frame, []).append(r)
        self.use_faceset = faceset is not None
        self.tracker = Tracker()
        self.track_faces = track_faces
        self.smoother = TrackSmoother(config.smooth if track_faces else 0.0)
        self.embedder: FaceEmbedder | None = None
        self.decisions: dict[int, bool] = {}
        self.track_offset = 0
        self.looks_like_target = 0  # tracks that look like the person being rendered
        self.left_alone = 0
        self.rotation_hint = 0
        self.smoother_tracks: set[int] = set()

    def _faces(self, rgb: np.ndarray, index: int) -> list[tuple[np.ndarray, tuple[float, ...], int | None]]:
        """(landmarks, bbox, track id or None) of each face in the frame."""
        if self.use_faceset:
            return [(r.landmarks_array, tuple(r.bbox), r.track) for r in self.rows.get(index, [])]
        if self.detector is None:
            self.detector = create_detector(self.cfg.detector)
        faces = detect_with_rotation(self.detector, rgb, True, self.rotation_hint)
        if faces:
            self.rotation_hint = faces[0].rotation
        return [(f.landmarks, f.bbox, None) for f in faces if f.size >= self.cfg.min_size]

    def _is_source_person(self, track: int, rgb: np.ndarray, landmarks: np.ndarray) -> bool:
        decided = self.decisions.get(track)
        if decided is not None:
            return decided
        src = self.swapper.embeddings[self.swapper.source]
        if self.cfg.all_faces or src is None:
            self.decisions[track] = True
            return True
        if self.embedder is None:
            self.embedder = FaceEmbedder()
        emb = self.embedder.embed(rgb, landmarks)
        d_src = float(embedding_distance(emb, src))
        dst = self.swapper.embeddings[self.swapper.to]
        d_dst = float(embedding_distance(emb, dst)) if dst is not None else float("inf")
        keep = d_src <= self.cfg.identity_threshold
        if not keep and d_dst <= self.cfg.identity_threshold and d_dst < d_src:
            self.looks_like_target += 1
        self.decisions[track] = keep
        return keep

    def __call__(self, job: FrameJob) -> FrameJob:
        found = self._faces(job.rgb, job.index)
        job.found = len(found)
        if not found:
            return job
        if self.track_faces:
            boxes = [(b[0], b[1], b[2], b[3]) for _, b, _ in found]
            ids = (
                [t if t is not None else -1 for _, _, t in found]
                if self.use_faceset
                else self.tracker.assign(job.index, boxes)
            )
            if not self.use_faceset:
                for ended in self.smoother_tracks - self.tracker.live_ids():
                    self.smoother.drop(ended)
                self.smoother_tracks = set(ids)
        else:
            ids = list(range(self.track_offset, self.track_offset + len(found)))
            self.track_offset += len(found)
        res, crop = self.swapper.resolution, self.swapper.crop_type
        for (landmarks, _, _), track in zip(found, ids, strict=True):
            if not self._is_source_person(track, job.rgb, landmarks):
                self.left_alone += 1
                continue
            smoothed = self.smoother.smooth(track, landmarks, job.time) if self.track_faces else landmarks
            matrix = alignment_matrix(smoothed, res, crop)
            job.faces.append(
                FaceJob(
                    track=track,
                    matrix=matrix,
                    landmarks=transform_points(landmarks, matrix),
                    crop=warp_crop(job.rgb, matrix, res),
                )
            )
        return job

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()
