"""The rules of each capability, free of HTTP and gRPC: handlers and servicers translate."""
