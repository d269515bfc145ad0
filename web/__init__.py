"""The Flask API: HTTP concerns only; business rules live in `common`."""
