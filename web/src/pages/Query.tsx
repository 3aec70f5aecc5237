import { PageHeader } from "../components/ui";

export function Query() {
  return <PageHeader title="Query" />;
}
