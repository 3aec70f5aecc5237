import { PageHeader } from "../components/ui";

export function Agents({ path }: { path: string[] }) {
  void path; return <PageHeader title="Agents" />;
}
