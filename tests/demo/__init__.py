"""The demo's tests (scripts/demo): its parts, and the whole demo run with SIGINT or TF Serving's stand-in."""
