/* Swagger UI for /docs, started from a file (the page's Content-Security-Policy allows no
   inline script). When the service has an API key, the key the web page keeps for this tab
   (or one asked for here) is sent as X-API-Key: for /openapi.json and for "Try it out". */
const KEY_ITEM = "technic-api-key";
const key = () => sessionStorage.getItem(KEY_ITEM) || "";

async function spec() {
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = await fetch("/openapi.json", { headers: key() ? { "X-API-Key": key() } : {} });
    if (r.status !== 401) return r.json();
    const k = window.prompt("This service needs its API key (X-API-Key):");
    if (!k) break;
    sessionStorage.setItem(KEY_ITEM, k);
  }
  throw new Error("the API description needs the service's API key");
}

spec().then((s) => {
  window.ui = SwaggerUIBundle({
    spec: s,
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: (req) => {
      if (key() && !req.headers["X-API-Key"]) req.headers["X-API-Key"] = key();
      return req;
    },
  });
}).catch((err) => {
  document.getElementById("swagger-ui").textContent = err.message;
});
