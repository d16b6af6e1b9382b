from django.conf import settings
from django.http import HttpResponse


class RequestBodyLimitMiddleware:
    """Refuse a request whose declared body is larger than MAX_REQUEST_BYTES with 413,
    before anything reads it. (Django reads at most CONTENT_LENGTH bytes, so a body that
    lies about its length cannot get past this either.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return HttpResponse("Invalid Content-Length.", status=400, content_type="text/plain")
        if length > settings.MAX_REQUEST_BYTES:
            limit_mb = settings.MAX_REQUEST_BYTES // (1024 * 1024)
            return HttpResponse(f"The request is too large (limit {limit_mb} MB).", status=413,
                                content_type="text/plain")
        return self.get_response(request)
