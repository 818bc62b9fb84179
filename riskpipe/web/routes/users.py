"""Account management, supervisors only: add users, change roles and passwords, (de)activate."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from riskpipe.errors import RiskpipeError
from riskpipe.users import ROLES, User, UserStore
from riskpipe.web.days import accounts_changed
from riskpipe.web.routes.deps import render, set_session_cookie, supervisor_form, supervisor_user

router = APIRouter(dependencies=[Depends(supervisor_user)])


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request) -> HTMLResponse:
    msg = request.query_params.get("msg")
    return render(request, "users.html", {"users": request.app.state.users.list(), "roles": ROLES, "msg": msg})


@router.post("/users")
async def users_action(
    request: Request, me: User = Depends(supervisor_user), form: dict[str, str] = Depends(supervisor_form)
) -> RedirectResponse:
    action, name = form.get("action", ""), form.get("username", "").strip()
    store: UserStore = request.app.state.users
    try:
        if action == "add":
            await run_in_threadpool(store.add, name, form.get("password", ""), form.get("role", "analyst"))
            msg = f"added {name}"
        elif action == "role":
            store.set_role(name, form.get("role", ""))
            msg = f"{name} is now {form.get('role')}"
        elif action in ("deactivate", "activate"):
            if name == me.username:
                raise RiskpipeError("you cannot deactivate yourself")
            store.set_active(name, action == "activate")
            msg = f"{name} {action}d"
        elif action == "password":
            await run_in_threadpool(store.set_password, name, form.get("password", ""))
            msg = f"password of {name} changed"  # and every session of theirs ended
        else:
            raise HTTPException(400, "unknown action")
    except RiskpipeError as exc:
        msg = str(exc)
    finally:
        request.app.state.user_cache.clear()
        await run_in_threadpool(accounts_changed, request.app.state.settings.home)  # ... in every worker
    resp = RedirectResponse("/users?" + urlencode({"msg": msg}), status_code=303)
    if action == "password" and name == me.username:
        fresh = store.get(me.username)  # the changer stays signed in here, on a new cookie
        if fresh is not None:
            set_session_cookie(request, resp, fresh)
    return resp
