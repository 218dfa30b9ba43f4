/* The dark theme follows the system's (prefers-color-scheme), now and when it changes:
 * Bootstrap 5.3 switches every colour variable on data-bs-theme="dark", and dashboard.css
 * restyles the tables and Plotly's charts from those variables. */
(function () {
  "use strict";
  var dark = window.matchMedia("(prefers-color-scheme: dark)");
  function apply() {
    document.documentElement.setAttribute("data-bs-theme", dark.matches ? "dark" : "light");
  }
  apply();
  dark.addEventListener("change", apply);
})();
