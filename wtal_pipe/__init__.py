"""wtal-pipe: weakly-supervised temporal action localization from raw video to mAP."""

__version__ = "0.2.0"
