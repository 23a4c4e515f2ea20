// Drawn by mlflow-gateway on MLflow's own pages: who is signed in, the console, sign out.
// Text nodes only, never HTML; it asks the gateway who the visitor is and draws nothing if the
// answer is not a signed-in person.
"use strict";

(async () => {
  let me;
  try {
    const response = await fetch("/.gateway/api/me", {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) return;
    me = await response.json();
  } catch (error) {
    return;
  }
  const style = document.createElement("link");
  style.rel = "stylesheet";
  style.href = "/.gateway/static/bar.css";
  document.head.appendChild(style);

  const bar = document.createElement("nav");
  bar.id = "mlgw-bar";
  bar.setAttribute("aria-label", "mlflow-gateway");
  const who = document.createElement("span");
  who.textContent = me.username;
  bar.appendChild(who);
  const link = (href, text) => {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    bar.appendChild(a);
  };
  if (me.admin) link("/.gateway/admin/policies", "Console");
  link("/.gateway/admin/account", "My account");
  if (me.method === "session" && me.csrf_token) {
    // Signing out is a POST with the session's CSRF token, which /.gateway/api/me hands to this
    // site's own scripts only; a GET of /.gateway/logout merely asks.
    const form = document.createElement("form");
    form.method = "post";
    form.action = "/.gateway/logout";
    const token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrf_token";
    token.value = me.csrf_token;
    form.appendChild(token);
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = "Sign out";
    form.appendChild(button);
    bar.appendChild(form);
  }
  document.body.appendChild(bar);
})();
