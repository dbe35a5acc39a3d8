"""The quickest end-to-end proof: Alice lists customers through the host."""

from tests.api.conftest import Api


def test_alice_lists_customers_as_herself(api: Api) -> None:
    _, dv_mark = api.marks()
    response = api.call("GET", "/api/customers?pageSize=5", user="alice")
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 5
    calls = [r for r in api.dataverse_requests(dv_mark) if r["path"].endswith("/contacts")]
    assert calls
    assert all(c["caller"]["oid"] == api.stack.tenant.user("alice").oid for c in calls)
    assert calls[-1]["correlation_id"] == response.headers["x-correlation-id"]
