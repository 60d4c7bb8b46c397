"""The ``[web]`` settings section: the control room served to browsers (``bptwin web``)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_PORT = 8200


class WebSettings(BaseModel):
    """Where ``bptwin web`` listens, who may connect, and whether a browser may ever write."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field("127.0.0.1", description="bind address; loopback unless behind a proxy")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    public_url: str = Field(
        "",
        description="the address browsers use, e.g. https://bptwin.lab.example when a TLS "
        "reverse proxy is in front (then the page opens its websocket with wss://); "
        "empty = http://host:port",
    )
    allowed_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="client addresses (CIDR) that may connect; behind a proxy that is the "
        "proxy's address",
    )
    allow_writes: bool = Field(
        False,
        description="let a browser session write (notebook entries, acknowledgements, control) "
        "after an operator logs in with a PIN; false = every browser session is a viewer",
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str) -> str:
        url = url.strip().rstrip("/")
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"public_url {url!r} must start with http:// or https://")
        return url

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"allowed_networks: {network!r} is not a network: {exc}") from exc
        return networks

    def allows(self, address: str | None) -> bool:
        """True when a client at ``address`` may connect."""
        if not address:
            return False
        try:
            client = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped is not None:
            client = client.ipv4_mapped
        return any(
            client in ipaddress.ip_network(network, strict=False)
            for network in self.allowed_networks
        )
