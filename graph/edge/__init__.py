"""The service's edge: what guards the HTTP server before a request reaches the application."""
