"""The staff dashboard of the task layer: live pages over the records, queues, workers and dead letters.

    apps.py        DashboardConfig, the app (label ``dashboard``)
    urls.py        /dashboard/: the pages, their JSON, the actions, the two assets
    views.py       short views over task_app.overview, the facade's cancel_task and legacy.dead_letters
    templates/dashboard/   base.html, index.html (the overview), task.html (one task's live page)
    static/dashboard/      dashboard.js (fetch() polling, DOM updates with textContent only), dashboard.css,
                           favicon.svg: served by views.asset (see there why not by staticfiles)

Staff only: anonymous visitors are sent to the admin's login page, other users get 403; the JSON
endpoints answer 401/403 in JSON instead, so a page whose session ended says so.  Nothing is
fetched from outside the server (no CDN).
"""
