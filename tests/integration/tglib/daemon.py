"""The shared part of the servers a test starts in a directory of its own (PostgreSQL, Redis):
closing removes the directory, the log's tail explains a failure, and `with` stops it."""

import shutil


class Daemon:
    """Subclasses set self.dir and self.log_path and define start() and stop()."""

    def close(self):
        """Stops the server and removes its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
