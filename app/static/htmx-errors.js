// What a refused HTMX request says, where the page would otherwise stay silent.
//
// The base template's htmx-config swaps 409 and 422 answers: the console's views answer
// them with a fragment made for the request's target (the reason, the refreshed list). Any
// other error (an expired form token, a missing permission, a server error) or an unreachable
// server gets a banner at the top of the page with the server's own words where it gave some.
(function () {
  "use strict";

  var SWAPPED = { 409: true, 422: true };

  function reasonOf(xhr) {
    var text = xhr.responseText || "";
    if (!text) {
      return xhr.status + " " + (xhr.statusText || "error");
    }
    var doc = new DOMParser().parseFromString(text, "text/html");
    var said = doc.querySelector("p") || doc.querySelector("h1") || doc.querySelector("title");
    var words = said ? said.textContent.trim() : "";
    return words || xhr.status + " " + (xhr.statusText || "error");
  }

  function banner(message) {
    var main = document.querySelector("main");
    if (!main) {
      return;
    }
    var box = document.getElementById("htmx-error");
    if (!box) {
      box = document.createElement("div");
      box.id = "htmx-error";
      box.className = "flash flash-error";
      box.setAttribute("role", "alert");
      main.insertBefore(box, main.firstChild);
    }
    box.textContent = message;
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    if (!SWAPPED[xhr.status]) {
      banner("That did not go through: " + reasonOf(xhr));
    }
  });

  document.addEventListener("htmx:sendError", function () {
    banner("The server could not be reached. Check the connection and try again.");
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var box = document.getElementById("htmx-error");
    if (box && event.detail.successful) {
      box.remove();
    }
  });
})();
