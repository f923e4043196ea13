"""SAM's automatic mask generator with its per-mask bookkeeping replaced by whole-tensor steps.

segment-anything's ``SamAutomaticMaskGenerator`` encodes every candidate mask to RLE (a Python
loop with a GPU->CPU sync per mask), deep-copies its ``MaskData`` on every concatenation and
decodes the RLEs back for ``output_mode="binary_mask"``; with many surviving masks that costs
more than the model. :class:`FastMaskGenerator` runs the same model calls, thresholds, box
computations and NMS (upstream's own functions, on the same tensors, in the same order), but
keeps each crop's masks as one crop-sized bool tensor on the model's device, and copies only the
masks that survive both NMS rounds to the CPU, once per crop, into the full-image array. Its
masks, scores and order are exactly upstream's.

With ``min_mask_region_area > 0`` upstream's own path runs (its small-region clean-up works on
RLEs and reruns NMS on the cleaned masks); samiam's default is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.utils.amg import (
    batch_iterator,
    batched_mask_to_box,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
)
from torchvision.ops.boxes import batched_nms, box_area


@dataclass(frozen=True)
class GeneratedMasks:
    """The generator's output for one image of shape (H, W).

    masks: (N, H, W) bool, upstream's ``segmentation`` records in upstream's order.
    scores: (N,) float32, SAM's ``predicted_iou`` (not clipped).
    areas: (N,) int64, pixels per mask (masks may be empty when the thresholds are low).
    """

    masks: np.ndarray
    scores: np.ndarray
    areas: np.ndarray


@dataclass(frozen=True)
class _CropMasks:
    """The masks of one crop that survived its thresholds and its NMS.

    masks: (n, h, w) bool on the model's device, in the crop's frame.
    scores: (n,) float32 on the model's device; boxes: (n, 4) XYXY in the image frame.
    """

    crop_box: list[int]
    masks: torch.Tensor
    scores: torch.Tensor
    boxes: torch.Tensor


class MaskGenerator(SamAutomaticMaskGenerator):
    """``SamAutomaticMaskGenerator`` that survives crops in which no mask passes the thresholds.

    Upstream builds a crop's ``crop_boxes`` with ``torch.tensor([])`` (shape ``(0,)``) when no
    mask survives; with crop layers on (the paper's setting) and no mask in any crop,
    ``box_area`` then fails with an IndexError. Here the empty case gets shape ``(0, 4)``.
    """

    def _process_crop(self, image, crop_box, crop_layer_idx, orig_size):
        data = super()._process_crop(image, crop_box, crop_layer_idx, orig_size)
        if len(data["rles"]) == 0:
            data["crop_boxes"] = torch.zeros((0, 4), dtype=data["boxes"].dtype)
        return data


class FastMaskGenerator(MaskGenerator):
    """:class:`MaskGenerator` with :meth:`generate_arrays`, upstream's binary masks without RLEs."""

    @torch.no_grad()
    def generate_arrays(self, image: np.ndarray) -> GeneratedMasks:
        """Masks of ``image`` ((H, W, 3) uint8), equal to ``generate(image)``'s in content and order.

        Uses :meth:`upstream_arrays` when ``min_mask_region_area > 0``.
        """
        if self.min_mask_region_area > 0:
            return self.upstream_arrays(image)
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        crops = [self._crop_masks(image, crop_box, layer_idx, orig_size)
                 for crop_box, layer_idx in zip(crop_boxes, layer_idxs)]
        crop_of = torch.cat([torch.full((len(crop.scores),), index) for index, crop in enumerate(crops)])
        local = torch.cat([torch.arange(len(crop.scores)) for crop in crops])
        if len(crops) > 1:
            # Upstream's duplicate removal between crops, preferring masks from smaller crops.
            boxes = torch.cat([crop.boxes for crop in crops])
            scores = (1 / box_area(torch.tensor(crop_boxes)[crop_of])).to(boxes.device)
            keep = batched_nms(boxes.float(), scores, torch.zeros(len(boxes)),
                               iou_threshold=self.crop_nms_thresh).cpu()
            crop_of, local = crop_of[keep], local[keep]
        return _assemble(crops, crop_of.numpy(), local.numpy(), orig_size)

    @torch.no_grad()
    def upstream_arrays(self, image: np.ndarray) -> GeneratedMasks:
        """``generate(image)``'s records (segment-anything's own path) as arrays."""
        records = self.generate(image)
        if not records:
            return GeneratedMasks(np.zeros((0, *image.shape[:2]), bool), np.zeros(0, np.float32),
                                  np.zeros(0, np.int64))
        return GeneratedMasks(
            masks=np.stack([record["segmentation"] for record in records]),
            scores=np.array([record["predicted_iou"] for record in records], np.float32),
            areas=np.array([record["area"] for record in records], np.int64))

    def _crop_masks(self, image: np.ndarray, crop_box: list[int], layer_idx: int,
                    orig_size: tuple[int, int]) -> _CropMasks:
        """Upstream's ``_process_crop`` with the masks kept as one bool tensor in the crop's frame."""
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        cropped_size = cropped.shape[:2]
        self.predictor.set_image(cropped)
        points_for_image = self.point_grids[layer_idx] * np.array(cropped_size)[None, ::-1]
        batches = [self._batch_masks(points, cropped_size, crop_box, orig_size)
                   for (points,) in batch_iterator(self.points_per_batch, points_for_image)]
        self.predictor.reset_image()
        masks, scores, boxes = (torch.cat(parts) for parts in zip(*batches))
        keep = batched_nms(boxes.float(), scores, torch.zeros(len(boxes)), iou_threshold=self.box_nms_thresh)
        offset = torch.tensor([[x0, y0, x0, y0]], device=boxes.device)
        return _CropMasks(crop_box, masks[keep], scores[keep], boxes[keep] + offset)

    def _batch_masks(self, points: np.ndarray, im_size: tuple[int, int], crop_box: list[int],
                     orig_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Upstream's ``_process_batch`` up to (not including) uncropping and RLE encoding.

        Returns masks (n, h, w) bool, predicted IoUs (n,) and boxes (n, 4) XYXY in the crop's frame.
        """
        orig_h, orig_w = orig_size
        transformed = self.predictor.transform.apply_coords(points, im_size)
        in_points = torch.as_tensor(transformed, device=self.predictor.device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        logits, iou_preds, _ = self.predictor.predict_torch(
            in_points[:, None, :], in_labels[:, None], multimask_output=True, return_logits=True)
        logits, iou_preds = logits.flatten(0, 1), iou_preds.flatten(0, 1)
        if self.pred_iou_thresh > 0.0:
            keep = iou_preds > self.pred_iou_thresh
            logits, iou_preds = logits[keep], iou_preds[keep]
        if self.stability_score_thresh > 0.0:
            stability = calculate_stability_score(
                logits, self.predictor.model.mask_threshold, self.stability_score_offset)
            keep = stability >= self.stability_score_thresh
            logits, iou_preds = logits[keep], iou_preds[keep]
        masks = logits > self.predictor.model.mask_threshold
        boxes = batched_mask_to_box(masks)
        keep = ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
        return masks[keep], iou_preds[keep], boxes[keep]


def _assemble(crops: list[_CropMasks], crop_of: np.ndarray, local: np.ndarray,
              orig_size: tuple[int, int]) -> GeneratedMasks:
    """Full-image masks for the kept candidates, row i from ``crops[crop_of[i]]``'s mask ``local[i]``.

    crop_of, local: (N,) int64. One device-to-host copy per crop.
    """
    masks = np.zeros((len(crop_of), *orig_size), bool)
    scores = np.zeros(len(crop_of), np.float32)
    areas = np.zeros(len(crop_of), np.int64)
    for index, crop in enumerate(crops):
        rows = np.flatnonzero(crop_of == index)
        if rows.size == 0:
            continue
        picked = torch.as_tensor(local[rows], device=crop.masks.device)
        x0, y0, x1, y1 = crop.crop_box
        chosen = crop.masks[picked]
        masks[rows, y0:y1, x0:x1] = chosen.cpu().numpy()
        scores[rows] = crop.scores[picked].float().cpu().numpy()
        areas[rows] = chosen.sum(dim=(1, 2)).cpu().numpy()
    return GeneratedMasks(masks, scores, areas)
