"""Rich renderables and pictures made from arrays and a Geometry; nothing here prints."""
