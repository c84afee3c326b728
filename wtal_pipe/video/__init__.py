"""Video decoding, optical flow and synthetic test clips."""
