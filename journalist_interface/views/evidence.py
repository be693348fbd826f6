"""Evidence export from a report's page: ``POST /reports/R/export`` answers with the signed zip.

The zip is made in a private temporary folder (memory-backed when /dev/shm exists) and removed
as soon as it is open for sending: the workstation keeps no decrypted copy.  The export is in
the audit log, with the zip's SHA-256.
"""

from __future__ import annotations

from flask import Blueprint, abort, g, send_file
from flask.typing import ResponseReturnValue

from journalist_interface.evidence import temporary_export
from journalist_interface.vault import today
from journalist_interface.views import checked_id, login_required, vault

bp = Blueprint("evidence", __name__)


@bp.post("/reports/<report_id>/export")
@login_required
def export(report_id: str) -> ResponseReturnValue:
    if not vault().report_exists(checked_id(report_id)):
        abort(404)
    name = f"evidence-{report_id[:8]}-{today()}.zip"
    with temporary_export(vault(), report_id, name) as made:
        handle = made.path.open("rb")  # still readable once its folder is gone
    g.download = True
    return send_file(
        handle, mimetype="application/zip", as_attachment=True, download_name=name, max_age=0
    )
