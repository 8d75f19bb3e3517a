"""Session-wide test fixtures."""
