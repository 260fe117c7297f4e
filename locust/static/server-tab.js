"use strict";
// Loaded by the Locust UI's index page (server_history.inject_tab_script).  Locust's
// extension points give a tab only a table, so while the Server tab is open this puts the
// server history page in a frame under that table.
(function () {
  const FRAME_ID = "server-history-frame";
  const PAGE = new URL("./", document.currentScript.src).href;

  function serverTabOpen() {
    return new URLSearchParams(window.location.search).get("tab") === "server";
  }

  function place() {
    let frame = document.getElementById(FRAME_ID);
    if (!serverTabOpen()) {
      if (frame) frame.remove();
      return;
    }
    const table = document.querySelector("#root table");
    if (!table) return;
    const anchor = table.closest(".MuiTableContainer-root") || table;
    if (frame && frame.previousElementSibling === anchor) return;
    if (!frame) {
      frame = document.createElement("iframe");
      frame.id = FRAME_ID;
      frame.title = "File server over the run";
      frame.src = PAGE;
      frame.style.cssText = "display:block;width:100%;height:620px;border:0;margin-top:12px";
    }
    anchor.after(frame);
  }

  place();
  setInterval(place, 500);
})();
