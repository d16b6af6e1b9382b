from django.test import override_settings


@override_settings(MAX_REQUEST_BYTES=1000)
def test_oversized_body_is_refused_before_it_is_read(client, db):
    response = client.generic("POST", "/accounts/login/", data=b"x" * 2000, content_type="application/octet-stream")
    assert response.status_code == 413
    assert "too large" in response.content.decode()


@override_settings(MAX_REQUEST_BYTES=1000)
def test_body_within_the_limit_reaches_the_view(client, db):
    response = client.post("/accounts/login/", {"login": "nobody@example.org", "password": "x"})
    assert response.status_code == 200


def test_malformed_content_length_is_a_bad_request(client, db):
    response = client.generic("POST", "/accounts/login/", data=b"", CONTENT_LENGTH="abc")
    assert response.status_code == 400
