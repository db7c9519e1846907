"""Training losses: masked SSIM + MSE with eye/mouth weighting (faceswap's penalised mask loss),
the learned mask's own loss, and the least-squares GAN loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from faceloom.metrics import SSIM_WINDOW, ssim_torch
from faceloom.train.models.base import TrainDefaults


def _weighted_mean(err: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, 3, R, R) ``err`` under (B, 1, R, R) ``weights`` (None: the plain mean)."""
    if weights is None:
        return err.mean()
    return (err * weights).sum() / (weights.sum() * err.shape[1]).clamp_min(1e-8)


def reconstruction_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    ssim_weight: float = 1.0,
    mse_weight: float = 1.0,
    ssim_scales: int = 1,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted DSSIM (at one or more scales) + MSE between a decoder's output and the unwarped target.

    Args:
        pred, target: (B, 3, R, R) in [0, 1].
        weights: (B, 1, R, R) per-pixel loss weights (0 outside the face, 1 on it, eye/mouth
            multipliers on top) or None for a plain unmasked loss.
        ssim_scales: DSSIM is summed over this many scales, R, R/2, R/4, ... (2x2 average pooling
            of images and weights; scales smaller than the 11 px SSIM window are skipped). At
            128 px an 11 px window sees only texture, and a model trained on it alone sits on the
            mean face for many steps; the coarse scales give the face's layout a gradient from the
            first step (DeepFaceLab's two-kernel DSSIM at high resolutions is the same idea).
    Returns:
        The scalar loss and its float parts for logging (``dssim`` is the full-resolution term,
        ``dssim_ms`` the sum over all scales).
    """
    pred = pred.float()
    target = target.float()
    parts: dict[str, float] = {}
    total = pred.new_zeros(())
    if ssim_weight:
        dssim = 1.0 - ssim_torch(pred, target, mask=weights)
        parts["dssim"] = float(dssim.detach())
        p, t, w = pred, target, weights
        for _ in range(ssim_scales - 1):
            if p.shape[-1] // 2 < SSIM_WINDOW:
                break
            p, t = F.avg_pool2d(p, 2), F.avg_pool2d(t, 2)
            w = None if w is None else F.avg_pool2d(w, 2)
            dssim = dssim + (1.0 - ssim_torch(p, t, mask=w))
        if ssim_scales > 1:
            parts["dssim_ms"] = float(dssim.detach())
        total = total + ssim_weight * dssim
    if mse_weight:
        err = (pred - target) ** 2
        mse = _weighted_mean(err, weights)
        total = total + mse_weight * mse
        parts["mse"] = float(mse.detach())
    return total, parts


BAND_SIGMAS = (1.0, 2.0)
"""Outer Gaussians of :func:`band_loss`'s bands: pixel-scale detail (x minus its sigma-1 blur) and
the band between the sigma-1 and sigma-2 blurs (eyelids, lip lines, nostrils)."""


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, C, H, W) blurred channel by channel with a separable Gaussian of ``sigma`` px (reflected
    borders), same size."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def band_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Weighted L1 between the fine bands of a decoder's output and its target (the top levels of
    a Laplacian pyramid, kept at full size): DSSIM and MSE let a young model pay little for leaving
    out small detail, while L1 on the band charges every missing edge as much as a wrong one.

    Args:
        pred, target: (B, 3, R, R) in [0, 1]; weights: (B, 1, R, R) or None (unmasked).
    """
    # The bands are linear, so the band of the difference is the difference of the bands.
    total = pred.new_zeros(())
    diff = pred - target
    for sigma in BAND_SIGMAS:
        low = gaussian_blur(diff, sigma)
        total = total + _weighted_mean((diff - low).abs(), weights)
        diff = low
    return total


def faceswap_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor,
    *,
    eye_weight: float = 3.0,
    mouth_weight: float = 2.0,
    ssim_weight: float = 1.0,
    mse_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """faceswap's penalised mask loss: L(y*M, p*M) + eye * L(y*E, p*E) + mouth * L(y*Mo, p*Mo) with
    L = ssim_weight * DSSIM + mse_weight * MSE over all pixels and DSSIM = (1 - SSIM) / 2.

    Args:
        pred, target: (B, 3, R, R) in [0, 1]; mask: (B, 1, R, R) face mask M;
        weights: (B, 1, R, R) weight map whose eye and mouth areas carry ``eye_weight`` and
            ``mouth_weight`` (the eye mask E and mouth mask Mo are read off it).
    """
    pred, target = pred.float(), target.float()
    eyes = (weights - eye_weight).abs().lt(1e-3).float()
    mouth = (weights - mouth_weight).abs().lt(1e-3).float()
    parts: dict[str, float] = {}

    def term(m: torch.Tensor, name: str) -> torch.Tensor:
        p, t = pred * m, target * m
        value = pred.new_zeros(())
        if ssim_weight:
            value = value + ssim_weight * (1.0 - ssim_torch(p, t)) / 2
        if mse_weight:
            value = value + mse_weight * ((p - t) ** 2).mean()
        parts[name] = float(value.detach())
        return value

    total = term(mask, "face") + eye_weight * term(eyes, "eyes") + mouth_weight * term(mouth, "mouth")
    return total, parts


def mask_loss(pred_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """MSE between a learned mask (B, 1, R, R) and the landmark hull mask of the target."""
    return F.mse_loss(pred_mask.float(), target_mask.float())


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN: the generator wants the discriminator to say 1 on its output."""
    return ((fake_logits.float() - 1.0) ** 2).mean()


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN: 1 on real faces, 0 on the decoder's output."""
    return 0.5 * (((real_logits.float() - 1.0) ** 2).mean() + (fake_logits.float() ** 2).mean())


def side_loss(
    defaults: TrainDefaults, pred: torch.Tensor, pred_mask: torch.Tensor | None, b: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    """One side's loss as its architecture's defaults ask: faceswap's or the weighted kind, plus the
    learned mask's own loss.

    Args:
        pred: (B, 3, R, R) the decoder's output; pred_mask: (B, 1, R, R) or None.
        b: the batch (``target``, ``mask``, ``weights``) of that side.
    """
    d = defaults
    if d.loss_style == "faceswap":
        loss, parts = faceswap_loss(
            pred,
            b["target"],
            b["mask"],
            b["weights"],
            eye_weight=d.eye_weight,
            mouth_weight=d.mouth_weight,
            ssim_weight=d.ssim_weight,
            mse_weight=d.mse_weight,
        )
    else:
        loss, parts = reconstruction_loss(
            pred,
            b["target"],
            b["weights"],
            ssim_weight=d.ssim_weight,
            mse_weight=d.mse_weight,
            ssim_scales=d.ssim_scales,
        )
        if d.band_weight:
            band = band_loss(pred.float(), b["target"].float(), b["weights"])
            loss = loss + d.band_weight * band
            parts["band"] = float(band.detach())
    if pred_mask is not None and d.mask_loss_weight:
        m_loss = mask_loss(pred_mask, b["mask"])
        loss = loss + d.mask_loss_weight * m_loss
        parts["mask"] = float(m_loss.detach())
    return loss, parts
