"""The reporters' Flask app: ``create_app(config)`` builds one from a frozen config.

Everything a view needs lives in one :class:`~source_interface.services.Services` object on
``app.extensions``: no module globals, nothing read at import time.  Keys are read from the data
folder when the app is built, once per worker process.
"""

from pathlib import Path

from flask import Flask

from blagh.config import Config, StoreConfig, read_config_file
from blagh.datadir import DataDir
from blagh.offload import Offload
from source_interface import browser, i18n, security, sessions, static_files
from source_interface.diskspace import FreeSpace
from source_interface.health import health_app
from source_interface.listeners import ListenerMiddleware
from source_interface.presealed import UploadBounds, UploadFolder
from source_interface.quietlog import QuietFlask
from source_interface.sealing import UploadLimits, sealing_request_class
from source_interface.services import Services, load_retired_words, load_wordlist
from source_interface.sessions import Sessions
from source_interface.store import INDEX_FILE, WRITER_SOCKET, PostgresStore, Store
from source_interface.store.index import Index
from source_interface.store.protocol import ServerStore
from source_interface.throttle import FailureThrottle
from source_interface.views import followup, landing, report, uploads


def open_store(
    data_dir: DataDir, config: StoreConfig | None = None, writer_socket: Path | None = None
) -> ServerStore:
    """The server store of a data folder made by ``blagh init``, on the backend ``[store]``
    names (``config``, or else the data folder's config file); with ``writer_socket``, its
    index's writes go to the shared writer there (source_interface/store/shared_writer.py)."""
    if config is None:
        file = data_dir.config_file
        config = read_config_file(file).store if file.exists() else StoreConfig()
    if config.backend == "postgresql":
        return PostgresStore(data_dir.path / "store", config.dsn)
    return Store(data_dir.path / "store", bytes.fromhex(data_dir.read_db_key()), writer_socket)


def shared_writer_socket(data_dir: DataDir, config: StoreConfig) -> Path | None:
    """Where a gunicorn server's shared writer listens; None on PostgreSQL, which takes every
    worker's writes itself."""
    if config.backend == "postgresql":
        return None
    return data_dir.path / "store" / WRITER_SOCKET


def open_index(data_dir: DataDir) -> Index:
    """The index alone, writing itself: what the shared writer's process serves."""
    return Index(data_dir.path / "store" / INDEX_FILE, bytes.fromhex(data_dir.read_db_key()))


def create_app(config: Config, writer_socket: Path | None = None) -> Flask:
    """Build the source interface for ``config``; its data folder must exist (``blagh init``).

    ``writer_socket``: where the shared writer of a gunicorn server listens (the workers'
    index writes go there); without it, this process writes itself (the test client, tools)."""
    data_dir = DataDir(Path(config.instance.data_dir))
    store = open_store(data_dir, config.store, writer_socket)
    site = config.source_interface
    # No Flask static route: static_files serves the folder, versioned and compressed.
    app = QuietFlask(__name__, static_folder=None)
    wordlist = load_wordlist()
    retired_words = load_retired_words()
    limits = config.limits
    space = FreeSpace(store.blobs.root, limits.free_space_floor_mb * 1024 * 1024)
    app.request_class = sealing_request_class(
        store.blobs,
        [key.encryption for key in config.recipients.analysts],
        UploadLimits(
            max_request_bytes=site.max_upload_mb * 1024 * 1024,
            max_files=site.max_files_per_report,
        ),
        space,
    )
    app.extensions["blagh"] = Services(
        config=config,
        store=store,
        sessions=Sessions(store, site.session_idle_minutes * 60),
        analysts=tuple(key.encryption for key in config.recipients.analysts),
        instance_salt=data_dir.read_instance_salt(),
        login_hash_key=data_dir.read_login_hash_key(),
        wordlist=wordlist,
        retired_words=retired_words,
        derivations=Offload(
            "codename derivations",
            threads=config.limits.derivations_per_worker,
            queue=config.limits.derivation_queue_per_worker,
        ),
        login_failures=FailureThrottle(),
    )
    i18n.init_app(app, config)
    security.init_app(app, config)
    sessions.init_app(app)
    static_files.init_app(app)
    browser.init_app(app, wordlist, retired_words)
    uploads_folder = UploadFolder(
        store.blobs.root.parent / "uploads",
        UploadBounds(
            max_uploads=limits.max_partial_uploads,
            max_per_form=limits.max_partial_uploads_per_form,
            max_total_bytes=limits.max_partial_upload_total_mb * 1024 * 1024,
        ),
        space,
        pool=store.blobs.pool,
    )
    uploads_folder.expire()  # idle ones only: a worker starting never cuts an upload short
    app.extensions["blagh_uploads"] = uploads_folder

    app.register_blueprint(landing.bp)
    app.register_blueprint(report.bp)
    app.register_blueprint(followup.bp)
    app.register_blueprint(uploads.bp)
    app.wsgi_app = ListenerMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, config.clearnet, health_app(store, space), site.health_port
    )
    return app
