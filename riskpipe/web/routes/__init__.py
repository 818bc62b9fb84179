"""The workbench's routers, one module per page (assembled by :func:`riskpipe.web.app.create_app`);
authentication, roles and CSRF checks are the dependencies of :mod:`riskpipe.web.routes.deps`."""
