# Stream transports (unix:, pipe:): fuzzing moved to mk/fuzz.mk (every
# decoder that reads peer-controlled bytes, not only the frame decoder).
