"""gRPC server: generated stubs (pb/), thin servicers, bootstrap, status mapping."""
