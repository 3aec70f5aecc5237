// Hash routes (#/datasets/acme/fw): the control plane serves one index.html, and links work
// with a plain reload or a bookmark.
import { useEffect, useState } from "react";

export interface Route {
  path: string[]; // "#/agents/edge-1" -> ["agents", "edge-1"]
  query: URLSearchParams;
}

function parse(): Route {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, search] = raw.split("?", 2);
  return {
    path: path ? path.split("/").filter(Boolean).map(decodeURIComponent) : [],
    query: new URLSearchParams(search ?? ""),
  };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(parse);
  useEffect(() => {
    const on = () => setRoute(parse());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

export function href(...parts: string[]): string {
  return "#/" + parts.map(encodeURIComponent).join("/");
}

export function navigate(to: string): void {
  window.location.hash = to.startsWith("#") ? to : "#" + to;
}
