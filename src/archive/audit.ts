export { audit, recordAudit } from '../audit/emit'; // moved: re-export kept until the workspace-db split lands
