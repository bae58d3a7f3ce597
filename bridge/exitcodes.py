"""The exit codes of `goe-bridge`, in one place (the service, the CLI, the systemd unit's
RestartPreventExitStatus and the Docker guide rely on them)."""

from __future__ import annotations

__all__ = ["EXIT_CONFIG", "EXIT_ERROR", "EXIT_OK"]

EXIT_OK = 0
# Something failed: an unexpected error in `run` (systemd/Docker restart it), or a command
# that could not do its job (probe, decode, health).
EXIT_ERROR = 1
# The configuration is invalid: restarting will not fix it.
EXIT_CONFIG = 2
