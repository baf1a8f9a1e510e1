"""The sine daemon: one ZeroMQ ROUTER socket for the plugins, one GPU worker thread, a job queue and the weight cache."""
