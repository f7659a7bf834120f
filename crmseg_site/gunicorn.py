"""gunicorn's settings for the production web server (`make serve`; README "Production server").

    .venv/bin/python -m gunicorn -c python:crmseg_site.gunicorn --bind HOST:PORT crmseg_site.wsgi

Threaded workers (gthread): a request mostly waits on the database, so threads serve the waiting
ones cheaply while processes use the cores. Each thread may keep one database connection open
(DATABASE_CONN_MAX_AGE), so a web host needs WEB_WORKERS x WEB_THREADS of the database's
max_connections. Workers are replaced after about WEB_MAX_REQUESTS requests (with jitter, so not
all at once), which bounds slow memory growth.
"""

import os

from crmseg_site.settings import envbool, envint

worker_class = "gthread"
workers = envint("WEB_WORKERS", 2 * (os.cpu_count() or 1), minimum=1)
threads = envint("WEB_THREADS", 4, minimum=1)
# A request taking longer is killed and its worker replaced (exports and refreshes run in qcluster).
timeout = envint("WEB_TIMEOUT", 60, minimum=1)
graceful_timeout = envint("WEB_GRACEFUL_TIMEOUT", 30, minimum=1)
keepalive = 5
max_requests = envint("WEB_MAX_REQUESTS", 5000, minimum=0)
max_requests_jitter = max_requests // 10
errorlog = "-"
accesslog = "-" if envbool("WEB_ACCESS_LOG", True) else None
# gunicorn's control socket (one per user's home by default) is not used; several servers on one
# host would contend for its path.
control_socket_disable = True
