"""Multi-object tracking of riders (ByteTrack-style) with per-track history and helmet votes."""

from edge.track.occupants import (
    OccupantGeometry,
    OccupantHead,
    box_text,
    order_by_travel,
    parse_boxes,
    rider_occupants,
)
from edge.track.tracker import (
    DetectionsLike,
    RiderDetection,
    RiderTracker,
    Track,
    TrackerUpdate,
    TrackKind,
    TrackPoint,
    attach_heads,
    iou_matrix,
    look_alike,
)

__all__ = [
    "DetectionsLike",
    "OccupantGeometry",
    "OccupantHead",
    "RiderDetection",
    "RiderTracker",
    "Track",
    "TrackKind",
    "TrackPoint",
    "TrackerUpdate",
    "attach_heads",
    "box_text",
    "order_by_travel",
    "parse_boxes",
    "rider_occupants",
    "iou_matrix",
    "look_alike",
]
