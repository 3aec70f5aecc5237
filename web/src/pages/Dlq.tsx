import { PageHeader } from "../components/ui";

export function Dlq() {
  return <PageHeader title="Dlq" />;
}
