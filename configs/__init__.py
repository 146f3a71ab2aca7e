"""One module per service: its config renderers (pure: plain values in, text out, through a
serializer) and its container spec (`configs.spec`)."""
