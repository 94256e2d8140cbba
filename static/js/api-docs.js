// The API page: Swagger UI (static/vendor/swagger-ui, from npm) over the panel's own schema.
document.addEventListener("DOMContentLoaded", () => {
  const element = document.getElementById("api-docs");
  if (!element || !window.SwaggerUIBundle) return;
  window.SwaggerUIBundle({
    url: element.dataset.schemaUrl,
    domNode: element,
    deepLinking: true,
    // Signed in, the schema comes with the session cookie; what is tried out carries the token pasted in Authorize.
    withCredentials: true,
  });
});
