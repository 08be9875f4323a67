"""Generated messages for TF Serving config protos the tensorflow-serving-api wheel lacks."""
