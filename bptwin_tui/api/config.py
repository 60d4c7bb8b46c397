"""The ``[api]`` settings section: where the read-only HTTP API listens and how big a page is."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_PORT = 8100


class ApiSettings(BaseModel):
    """The read-only HTTP API (``bptwin api serve``, or inside ``bptwin serve`` when enabled)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = Field(False, description="also serve the API from 'bptwin serve'")
    host: str = Field("127.0.0.1", description="bind address; loopback unless behind a proxy")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    default_limit: int = Field(1000, ge=1, le=1_000_000, description="readings per page")
    max_limit: int = Field(100_000, ge=1, le=1_000_000, description="largest page asked for")

    @model_validator(mode="after")
    def _default_fits(self) -> ApiSettings:
        if self.default_limit > self.max_limit:
            raise ValueError(
                f"default_limit {self.default_limit} is larger than max_limit {self.max_limit}"
            )
        return self
