// Light or dark: the system's choice unless the user picked one (kept in localStorage).
(function () {
  var saved = null;
  try { saved = localStorage.getItem("signalbox-theme"); } catch (e) {}
  if (saved === "dark" || saved === "light") document.documentElement.dataset.theme = saved;
  document.addEventListener("DOMContentLoaded", function () {
    var b = document.getElementById("theme-toggle");
    if (!b) return;
    b.addEventListener("click", function () {
      var dark = document.documentElement.dataset.theme
        ? document.documentElement.dataset.theme === "dark"
        : window.matchMedia("(prefers-color-scheme: dark)").matches;
      var next = dark ? "light" : "dark";
      document.documentElement.dataset.theme = next;
      try { localStorage.setItem("signalbox-theme", next); } catch (e) {}
      document.dispatchEvent(new Event("signalbox-theme"));
    });
  });
})();
