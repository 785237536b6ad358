"""gunicorn settings for alpcare (gunicorn also reads this file by default from the current
directory): ``gunicorn -c gunicorn.conf.py alpcare.wsgi --bind 0.0.0.0:8000 --workers 4``.

No ``Server: gunicorn`` banner: gunicorn has no setting for it (its maintainers declined one,
benoitc/gunicorn#825), so the header line is dropped from the headers gunicorn adds itself.
"""

from gunicorn.http import wsgi

_gunicorn_default_headers = wsgi.Response.default_headers


def _default_headers_without_server(self: wsgi.Response) -> list[str]:
    return [
        line for line in _gunicorn_default_headers(self) if not line.lower().startswith("server:")
    ]


wsgi.Response.default_headers = _default_headers_without_server  # type: ignore[method-assign]
