"""The response headers both web apps set on every response: the reporters' pages and the
analysts' offline app differ only in their Content-Security-Policy.

Here, in the shared kernel, so that the workstation (offline, trusted) does not import the online
server's package to get them.
"""

from __future__ import annotations

PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "fullscreen",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "screen-wake-lock",
        "usb",
        "xr-spatial-tracking",
    )
)
"""No device or sensor: a reporting form needs none, and each one could identify a reporter."""


def security_headers(content_security_policy: str) -> dict[str, str]:
    """The headers of every response of an app whose pages allow ``content_security_policy``.

    Set replacing what a view or Flask put there (``Cache-Control`` above all)."""
    return {
        "Content-Security-Policy": content_security_policy,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Permissions-Policy": PERMISSIONS_POLICY,
    }
