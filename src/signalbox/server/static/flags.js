// The flags page's switches: On, Off and Set % each ask for a confirmation naming the flag,
// its state now and the change, then POST /api/v1/flags/NAME/set with the reason and the
// session's CSRF token (as the queues page's buttons do). Values from outside reach the page
// only through textContent; the confirmation is plain text.
(function () {
  "use strict";
  var status = document.getElementById("act-status");

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }
  function say(cls, text) {
    status.className = cls;
    status.textContent = text;
  }
  function post(name, body) {
    var what = "flag " + name + " " + body.value;
    say("small muted", what + "…");
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    var token = csrf();
    if (token) headers["X-CSRF-Token"] = token;
    return fetch("/api/v1/flags/" + encodeURIComponent(name) + "/set", {
      method: "POST", headers: headers, credentials: "same-origin", body: JSON.stringify(body)
    }).then(function (r) { return r.json().then(function (b) { return [r.status, b]; }); })
      .then(function (res) {
        if (res[1].status === "success") {
          say("small", what + ": done (" + res[1].data.flag.describe + "), seen everywhere within " +
              res[1].data.refresh_s + "s");
          setTimeout(function () { location.reload(); }, 400);
        } else {
          say("small error", what + " refused (" + res[0] + "): " + (res[1].error || ""));
        }
      })
      .catch(function (e) { say("small error", String(e)); });
  }

  Array.prototype.forEach.call(document.querySelectorAll("form.flag-set"), function (f) {
    f.addEventListener("submit", function (e) {
      e.preventDefault();
      var button = e.submitter;
      var name = f.dataset.flag;
      var value = button ? button.value : "";
      if (value === "percent") {
        var pct = f.elements.percent.value.trim();
        if (pct === "" || isNaN(Number(pct))) {
          say("small error", "flag " + name + ": give a percentage from 0 to 100");
          return;
        }
        value = pct + "%";
      }
      var reason = f.elements.reason.value.trim();
      if (!reason) {
        say("small error", "flag " + name + ": say why (the reason is kept in the audit trail)");
        f.elements.reason.focus();
        return;
      }
      var row = f.closest("tr");
      var now = row ? row.querySelector(".flag-state").textContent.replace(/\s+/g, " ").trim() : "";
      var question = "Set flag " + name + " to " + value + "?\n\nNow: " + now +
        (value === "off" ? "\n\nOff is the kill switch: nobody gets the feature." : "") +
        "\nReason: " + reason;
      if (!window.confirm(question)) {
        say("small muted", "flag " + name + ": not changed");
        return;
      }
      post(name, { value: value, reason: reason });
    });
  });
})();
