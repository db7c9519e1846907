"""Reading and writing media: frames in, labelled files out."""
