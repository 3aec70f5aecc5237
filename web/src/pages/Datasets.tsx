// Datasets: the list (#/datasets), the create form (#/datasets/new) and a dataset's page with
// its transformation editor and live preview (#/datasets/{tenant}/{dataset}).
import { useEffect } from "react";
import { useRoute } from "../router";
import { useTenant } from "../tenant";
import { DatasetEditor } from "./datasets/DatasetEditor";
import { DatasetList } from "./datasets/DatasetList";
import { NotFound } from "./NotFound";
import "./Datasets.css";

export function Datasets({ path }: { path: string[] }) {
  const { query } = useRoute();
  const { tenant, setTenant } = useTenant();
  const wanted = query.get("tenant") ?? "";
  const listing = path.length === 0;
  // #/datasets?tenant=acme (the tenants page links here): scope the dashboard to that tenant,
  // then drop the query so the top-bar picker stays in charge.
  useEffect(() => {
    if (!listing || !wanted) return;
    if (wanted !== tenant) setTenant(wanted);
    window.location.replace("#/datasets");
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [listing, wanted]);
  if (listing) return <DatasetList tenant={wanted || tenant} />;
  if (path.length === 1 && path[0] === "new") {
    return <DatasetEditor key="new" initialTenant={wanted || tenant} />;
  }
  if (path.length === 2) return <DatasetEditor key={path.join("/")} tenant={path[0]} id={path[1]} />;
  return <NotFound />;
}
