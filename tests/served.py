"""An ASGI app served by uvicorn in a thread of the test process, on a free local port."""
import threading
import time
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """Run `app` (its lifespan too) until the block ends; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
