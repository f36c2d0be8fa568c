"""Every byte in or out: arrays (.npy, .npz, text, stdin/stdout), images, atomic writes."""
