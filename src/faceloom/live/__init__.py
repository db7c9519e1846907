"""Live swap: a trained model on a camera, a stream or a file played in real time (`faceloom live`)."""
