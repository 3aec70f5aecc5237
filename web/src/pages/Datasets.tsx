import { PageHeader } from "../components/ui";

export function Datasets({ path }: { path: string[] }) {
  void path; return <PageHeader title="Datasets" />;
}
