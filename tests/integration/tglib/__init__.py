"""Support code for tollgate's integration tests: the process, scripted peers, a raw client."""

from .client import Client, build_request, chunked, get
from .http import Headers, Response, is_json_error
from .proc import BIN, Tollgate, default_config, is_sanitized, run_cli, service, to_yaml
from .upstream import Upstream, chunked_response, echo, echo_body, response

__all__ = [
    "BIN", "Client", "Headers", "Response", "Tollgate", "Upstream", "build_request", "chunked",
    "chunked_response", "default_config", "echo", "echo_body", "get", "is_json_error",
    "is_sanitized", "response", "run_cli", "service", "to_yaml",
]
