"""Face detection, landmarks, alignment, identity and the on-disk faceset."""
