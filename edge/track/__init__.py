"""Multi-object tracking of riders (ByteTrack-style) with per-track history and helmet votes."""

from edge.track.tracker import (
    DetectionsLike,
    RiderDetection,
    RiderTracker,
    Track,
    TrackerUpdate,
    TrackPoint,
    attach_heads,
    iou_matrix,
    look_alike,
)

__all__ = [
    "DetectionsLike",
    "RiderDetection",
    "RiderTracker",
    "Track",
    "TrackPoint",
    "TrackerUpdate",
    "attach_heads",
    "iou_matrix",
    "look_alike",
]
