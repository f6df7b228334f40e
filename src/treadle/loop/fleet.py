"""The loop's hands on the fleet: the gateway's admin API (routes, adapter load/unload on every replica).

Every call sends the admin key and raises ``FleetError`` (with the gateway's message) on a non-2xx
answer, so a step that could not change the fleet never records that it did.
"""

from __future__ import annotations

import httpx


class FleetError(RuntimeError):
    pass


class FleetClient:
    def __init__(self, gateway_url: str, admin_key: str | None, timeout_s: float = 300.0) -> None:
        self.base = gateway_url.rstrip("/").removesuffix("/v1")
        self.headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        self.client = httpx.Client(timeout=timeout_s)

    def _call(self, method: str, path: str, json: dict | None = None) -> dict:
        try:
            resp = self.client.request(method, f"{self.base}{path}", json=json, headers=self.headers)
        except httpx.HTTPError as e:
            raise FleetError(f"{method} {path}: {e!r}") from e
        if resp.status_code >= 300:
            raise FleetError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else {}

    def set_route(self, alias: str, weights: dict[str, float]) -> dict:
        return self._call("PUT", f"/admin/routes/{alias}", {"versions": weights})

    def routes(self) -> dict:
        return self._call("GET", "/admin/routes")

    def load_adapter(self, name: str, path: str) -> dict:
        return self._call("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})

    def unload_adapter(self, name: str) -> dict:
        return self._call("POST", "/v1/unload_lora_adapter", {"lora_name": name})

    def models(self) -> list[str]:
        return [m["id"] for m in self._call("GET", "/v1/models").get("data", [])]

    def close(self) -> None:
        self.client.close()
