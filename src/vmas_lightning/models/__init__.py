"""The VMAs network: video encoders, music decoders, audio codecs and `VMASModel`."""
